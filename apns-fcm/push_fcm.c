/*
 * FCM specifics: the service account, the OAuth2 access token obtained
 * with an RS256 JWT-bearer grant over our own HTTP/2 connection (cached,
 * refreshed ahead of expiry, one request at a time), the v1 send request
 * and reading FCM's answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>

#include "push_int.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_GRANT "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
#define FCM_ASSERTION_S 3600
#define FCM_AHEAD_MAX_S 300 /* refresh at most this long before expiry */
#define FCM_MARGIN_MAX_S 30 /* stop using a token this long before */
#define FCM_BACKOFF_MAX_MS 60000

/* A service account and its access token. */
struct push_fcm {
	struct push_client *client;
	char *project_id;
	char *client_email;
	char *private_key;
	char *token_uri;
	struct push_endpoint ep;  /* of token_uri */
	struct push_conn *conn;   /* to token_uri */
	struct push_req *pending; /* waiting for that connection */
	struct push_req *asking;  /* the token request under way */

	char *bearer; /* "Bearer <access token>" */
	uint64_t gen;
	uint64_t refresh_at; /* monotonic microseconds */
	uint64_t usable_until;

	unsigned fails;
	uint64_t next_try;
	struct event *retry_ev;
};

/* A string member of a JSON object copied, or NULL. */
static char *
fcm_str(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	return strdup(json_string_value(v));
}

/*
 * The signed assertion for the JWT-bearer grant, or NULL. Caller frees
 * with free().
 */
char *
push_fcm_assertion(
    const char *client_email, const char *pem, const char *aud, long long iat)
{
	jwt_t *jwt = NULL;
	char *out = NULL;

	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grant(jwt, "iss", client_email) != 0 ||
	    jwt_add_grant(jwt, "scope", FCM_SCOPE) != 0 ||
	    jwt_add_grant(jwt, "aud", aud) != 0 ||
	    jwt_add_grant_int(jwt, "iat", iat) != 0 ||
	    jwt_add_grant_int(jwt, "exp", iat + FCM_ASSERTION_S) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)pem,
	        (int)strlen(pem)) != 0)
		goto out;
	out = jwt_encode_str(jwt);

out:
	jwt_free(jwt);
	return out;
}

/* The back-off between token attempts ended. */
static void
fcm_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push_fcm *fcm = arg;

	push_dispatch_later(fcm->client);
}

/* Read the service-account fields; returns NULL or what is wrong. */
static const char *
fcm_parse(struct push_fcm *fcm, const char *json)
{
	json_t *root;
	const char *cause = NULL;

	root = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		return "service account is not a JSON object";
	}
	fcm->project_id = fcm_str(root, "project_id");
	fcm->client_email = fcm_str(root, "client_email");
	fcm->private_key = fcm_str(root, "private_key");
	fcm->token_uri = fcm_str(root, "token_uri");
	if (fcm->project_id == NULL || fcm->client_email == NULL ||
	    fcm->private_key == NULL || fcm->token_uri == NULL)
		cause = "service account needs project_id, client_email, "
		        "private_key and token_uri";
	else if (strspn(fcm->project_id,
	             "abcdefghijklmnopqrstuvwxyz"
	             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") !=
	    strlen(fcm->project_id))
		cause = "project_id has odd characters";
	json_decref(root);
	return cause;
}

/*
 * The FCM part of client c from the service-account JSON text; checks
 * the key by signing once. NULL with *cause set.
 */
struct push_fcm *
push_fcm_new(struct push_client *c, const char *json, const char **cause)
{
	struct push_fcm *fcm;
	char *probe;

	fcm = calloc(1, sizeof(*fcm));
	if (fcm == NULL) {
		*cause = "out of memory";
		return NULL;
	}
	fcm->client = c;
	*cause = fcm_parse(fcm, json);
	if (*cause != NULL)
		goto fail;
	if (push_endpoint_parse(fcm->token_uri, &fcm->ep) != 0) {
		*cause = "token_uri must be https://host[:port]/path";
		goto fail;
	}
	probe = push_fcm_assertion(fcm->client_email, fcm->private_key,
	    fcm->token_uri, (long long)time(NULL));
	if (probe == NULL) {
		*cause = "cannot sign an RS256 assertion with private_key";
		goto fail;
	}
	free(probe);
	fcm->conn = push_conn_new(c, &fcm->ep, "oauth");
	fcm->retry_ev = evtimer_new(c->base, fcm_retry_cb, fcm);
	if (fcm->conn == NULL || fcm->retry_ev == NULL) {
		*cause = "out of memory";
		goto fail;
	}
	return fcm;

fail:
	push_fcm_free(fcm);
	return NULL;
}

/* Free the FCM part (the token request is dropped); accepts NULL. */
void
push_fcm_free(struct push_fcm *fcm)
{
	if (fcm == NULL)
		return;
	push_conn_free(fcm->conn);
	fcm->conn = NULL;
	push_req_free(fcm->pending);
	push_req_free(fcm->asking);
	if (fcm->retry_ev != NULL)
		event_free(fcm->retry_ev);
	free(fcm->project_id);
	free(fcm->client_email);
	if (fcm->private_key != NULL) {
		OPENSSL_cleanse(fcm->private_key, strlen(fcm->private_key));
		free(fcm->private_key);
	}
	free(fcm->token_uri);
	free(fcm->bearer);
	push_endpoint_clear(&fcm->ep);
	free(fcm);
}

/* The project id in the send path. */
const char *
push_fcm_project(const struct push_fcm *fcm)
{
	return fcm->project_id;
}

/* Prepare the token request (once at a time, after any back-off). */
static void
fcm_fetch(struct push_fcm *fcm)
{
	struct push_client *c = fcm->client;
	struct push_req *req = NULL;
	struct timeval tv;
	uint64_t now = push_now_us();
	char *jwt = NULL;

	if (fcm->pending != NULL || fcm->asking != NULL)
		return;
	if (now < fcm->next_try) {
		tv.tv_sec = (fcm->next_try - now) / 1000000;
		tv.tv_usec = (fcm->next_try - now) % 1000000;
		if (!evtimer_pending(fcm->retry_ev, NULL))
			evtimer_add(fcm->retry_ev, &tv);
		return;
	}
	jwt = push_fcm_assertion(fcm->client_email, fcm->private_key,
	    fcm->token_uri, (long long)time(NULL));
	req = push_req_new(c, PUSH_REQ_OAUTH);
	if (jwt == NULL || req == NULL)
		goto fail;
	req->path = strdup(fcm->ep.path);
	if (asprintf(&req->body, "grant_type=%s&assertion=%s", FCM_GRANT, jwt) <
	    0)
		req->body = NULL;
	if (req->path == NULL || req->body == NULL ||
	    push_req_header(req, "content-type",
	        "application/x-www-form-urlencoded") != 0 ||
	    push_req_arm(req, c->request_timeout_ms) != 0)
		goto fail;
	req->body_len = strlen(req->body);
	snprintf(req->tail, sizeof(req->tail), "auth");
	fcm->pending = req;
	push_log(c, PUSH_LOG_DEBUG, "fcm oauth: asking for an access token");
	free(jwt);
	return;

fail:
	push_log(c, PUSH_LOG_ERROR,
	    "fcm oauth: cannot build the token "
	    "request");
	free(jwt);
	push_req_free(req);
	fcm->next_try = now + 1000ull * FCM_BACKOFF_MAX_MS;
}

/* Send the token request once its connection is up. */
void
push_fcm_dispatch(struct push_fcm *fcm)
{
	struct push_req *req = fcm->pending;

	if (req == NULL)
		return;
	if (!push_conn_usable(fcm->conn)) {
		push_conn_start(fcm->conn);
		return;
	}
	if (push_conn_send(fcm->conn, req, NULL) != 0) {
		push_conn_abort(fcm->conn, "cannot open a stream");
		return;
	}
	fcm->pending = NULL;
	fcm->asking = req;
	push_conn_flush(fcm->conn);
}

/*
 * The bearer value for sends now, or NULL while none is valid; starts a
 * refresh when the token nears its end. *gen names the token.
 */
const char *
push_fcm_bearer(struct push_fcm *fcm, uint64_t *gen)
{
	uint64_t now = push_now_us();

	if (fcm->bearer == NULL || now >= fcm->refresh_at) {
		fcm_fetch(fcm);
		push_fcm_dispatch(fcm);
	}
	*gen = fcm->gen;
	if (fcm->bearer == NULL || now >= fcm->usable_until)
		return NULL;
	return fcm->bearer;
}

/* FCM rejected the token of generation gen: drop it (once). */
void
push_fcm_unauthorized(struct push_fcm *fcm, uint64_t gen)
{
	if (gen != fcm->gen || fcm->bearer == NULL)
		return;
	free(fcm->bearer);
	fcm->bearer = NULL;
	fcm->usable_until = fcm->refresh_at = 0;
}

/*
 * Read a token endpoint answer: access_token and expires_in. Returns 0,
 * or -1 when either is missing; *token is malloc'd.
 */
int
push_fcm_token_parse(
    const char *body, size_t len, char **token, long long *expires_in)
{
	json_t *root, *t, *e;
	int rv = -1;

	*token = NULL;
	root = json_loadb(body, len, 0, NULL);
	if (root == NULL || !json_is_object(root))
		goto out;
	t = json_object_get(root, "access_token");
	e = json_object_get(root, "expires_in");
	if (!json_is_string(t) || json_string_length(t) == 0 ||
	    !json_is_integer(e) || json_integer_value(e) <= 0)
		goto out;
	*token = strdup(json_string_value(t));
	*expires_in = json_integer_value(e);
	rv = *token != NULL ? 0 : -1;

out:
	json_decref(root);
	return rv;
}

/*
 * Store a fresh token. Stop using it a little before it ends (a second
 * more for the rounding of expires_in and of the peer's clock), and
 * refresh well before that.
 */
static void
fcm_store(struct push_fcm *fcm, char *token, long long ttl)
{
	uint64_t now = push_now_us();
	long long ttl_ms = ttl * 1000, margin, ahead;

	margin = ttl_ms / 20 < FCM_MARGIN_MAX_S * 1000
	    ? ttl_ms / 20
	    : FCM_MARGIN_MAX_S * 1000;
	margin += 1000;
	if (margin > ttl_ms / 2)
		margin = ttl_ms / 2;
	ahead = ttl_ms / 5 < FCM_AHEAD_MAX_S * 1000 ? ttl_ms / 5
	                                            : FCM_AHEAD_MAX_S * 1000;
	if (ahead < 2 * margin)
		ahead = 2 * margin;
	if (ahead > ttl_ms * 3 / 4)
		ahead = ttl_ms * 3 / 4;

	free(fcm->bearer);
	if (asprintf(&fcm->bearer, "Bearer %s", token) < 0)
		fcm->bearer = NULL;
	OPENSSL_cleanse(token, strlen(token));
	free(token);
	fcm->gen++;
	fcm->refresh_at = now + 1000ull * (uint64_t)(ttl_ms - ahead);
	fcm->usable_until = now + 1000ull * (uint64_t)(ttl_ms - margin);
	fcm->fails = 0;
	fcm->client->stats.token_refreshes++;
	push_log(fcm->client, PUSH_LOG_INFO,
	    "fcm oauth: access token valid "
	    "for %lld s",
	    ttl);
}

/* Everything waiting completes: the token endpoint refused us. */
static void
fcm_reject_queue(struct push_fcm *fcm, int status)
{
	struct push_client *c = fcm->client;
	const struct push_outcome_row *row;

	row = push_outcome_internal("AuthRejected");
	while (!TAILQ_EMPTY(&c->queue))
		push_req_complete(TAILQ_FIRST(&c->queue), row, status,
		    "AuthRejected", 0, 0, NULL);
}

/*
 * The token request ended (answer, failure or timeout): keep the token,
 * or back off; a 4xx also fails what is waiting.
 */
void
push_fcm_oauth_done(struct push_req *req)
{
	struct push_client *c = req->client;
	struct push_fcm *fcm = c->fcm;
	char *token = NULL;
	long long ttl = 0;
	unsigned ms;

	if (fcm == NULL || c->closing) {
		if (fcm != NULL && fcm->asking == req)
			fcm->asking = NULL;
		push_req_free(req);
		return;
	}
	if (fcm->asking == req)
		fcm->asking = NULL;
	if (fcm->pending == req)
		fcm->pending = NULL;
	if (req->ended && req->status == 200 &&
	    push_fcm_token_parse(req->resp, req->resp_len, &token, &ttl) == 0) {
		fcm_store(fcm, token, ttl);
	} else {
		fcm->fails++;
		ms = 500u << (fcm->fails > 7 ? 7 : fcm->fails - 1);
		if (ms > FCM_BACKOFF_MAX_MS)
			ms = FCM_BACKOFF_MAX_MS;
		ms = ms / 2 + push_random() % (ms / 2 + 1);
		fcm->next_try = push_now_us() + 1000ull * ms;
		push_log(c, PUSH_LOG_ERROR,
		    "fcm oauth: token request failed "
		    "(status %d), next try in %u ms",
		    req->status, ms);
		if (req->ended && req->status >= 400 && req->status < 500)
			fcm_reject_queue(fcm, req->status);
	}
	push_conn_drain(fcm->conn, "token obtained");
	push_req_free(req);
	push_dispatch_later(c);
}

/* Check an FCM notification; returns NULL or what is wrong. */
static const char *
fcm_check(const struct push_note *note)
{
	const char *t = note->device_token;

	if (t == NULL || t[0] == '\0' || strlen(t) > 4096)
		return "device token is empty or too long";
	for (; *t != '\0'; t++) {
		if ((unsigned char)*t <= ' ' || *t == '"' || *t == '\\')
			return "device token has odd characters";
	}
	if (note->payload == NULL)
		return "message is missing";
	return NULL;
}

/*
 * The send body: the caller's message object with "token" added,
 * wrapped as {"message": ...}. NULL with *cause set.
 */
static char *
fcm_body(const struct push_note *note, const char **cause)
{
	json_t *msg, *root = NULL;
	char *out = NULL;

	msg = json_loads(note->payload, JSON_REJECT_DUPLICATES, NULL);
	if (msg == NULL || !json_is_object(msg)) {
		*cause = "message is not a JSON object";
		goto out;
	}
	if (json_object_get(msg, "token") || json_object_get(msg, "topic") ||
	    json_object_get(msg, "condition")) {
		*cause = "message must not name its target";
		goto out;
	}
	if (json_object_set_new(
	        msg, "token", json_string(note->device_token)) != 0) {
		*cause = "device token is not UTF-8";
		goto out;
	}
	root = json_pack("{s:O}", "message", msg);
	if (root != NULL && note->validate_only)
		json_object_set_new(root, "validate_only", json_true());
	if (root != NULL)
		out = json_dumps(root, JSON_COMPACT);
	if (out == NULL)
		*cause = "out of memory";

out:
	json_decref(msg);
	json_decref(root);
	return out;
}

/* Fill req with the path, headers and body of an FCM v1 send. */
int
push_fcm_build(struct push_req *req, const char *project,
    const struct push_note *note, const char **cause)
{
	size_t tlen;

	*cause = fcm_check(note);
	if (*cause != NULL)
		return -1;
	req->body = fcm_body(note, cause);
	if (req->body == NULL)
		return -1;
	req->body_len = strlen(req->body);
	*cause = "out of memory";
	if (asprintf(&req->path, "/v1/projects/%s/messages:send", project) <
	    0) {
		req->path = NULL;
		return -1;
	}
	if (push_req_header(req, "content-type", "application/json") != 0)
		return -1;
	tlen = strlen(note->device_token);
	snprintf(req->tail, sizeof(req->tail), "%s",
	    note->device_token + (tlen > 4 ? tlen - 4 : 0));
	*cause = NULL;
	return 0;
}

/* The FcmError errorCode among error.details, or NULL. */
static const char *
fcm_error_code(json_t *error)
{
	json_t *details = json_object_get(error, "details"), *d, *type;
	size_t i;

	json_array_foreach(details, i, d)
	{
		type = json_object_get(d, "@type");
		if (json_is_string(type) &&
		    strstr(json_string_value(type), "FcmError") != NULL &&
		    json_is_string(json_object_get(d, "errorCode")))
			return json_string_value(
			    json_object_get(d, "errorCode"));
	}
	return NULL;
}

/*
 * Read an FCM answer into req: the message name on success, else the
 * errorCode (or the error status) as the reason.
 */
void
push_fcm_answer(struct push_req *req)
{
	json_t *root, *error, *v;
	const char *reason;

	if (req->resp == NULL)
		return;
	root = json_loadb(req->resp, req->resp_len, 0, NULL);
	if (root == NULL || !json_is_object(root))
		goto out;
	v = json_object_get(root, "name");
	if (json_is_string(v))
		req->id_buf = strdup(json_string_value(v));
	error = json_object_get(root, "error");
	if (!json_is_object(error))
		goto out;
	reason = fcm_error_code(error);
	if (reason == NULL && json_is_string(json_object_get(error, "status")))
		reason = json_string_value(json_object_get(error, "status"));
	if (reason != NULL && strlen(reason) <= 128)
		req->reason_buf = strdup(reason);

out:
	json_decref(root);
}
