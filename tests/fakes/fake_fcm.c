/*
 * fake_fcm: a strict stand-in for Firebase Cloud Messaging HTTP v1 and
 * its OAuth token endpoint, for tests. POST /token checks the RS256
 * JWT-bearer assertion and issues opaque access tokens; messages:send
 * checks the token and the message shape and answers like Google does.
 * It follows a fault plan; --fast accepts everything for benchmarks.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <jansson.h>
#include <jwt.h>

#include "fakeutil.h"
#include "h2srv.h"
#include "plan.h"
#include "record.h"

#define FCM_MESSAGE_MAX 4096
#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define FCM_ASSERTION_LIFE 3600 /* exp - iat at most */
#define FCM_SKEW 60             /* seconds of clock skew allowed */
#define FCM_TTL_MAX 2419200     /* android.ttl: four weeks */
#define FCM_TOKENS_MAX 4096     /* issued access tokens kept */
#define FCM_TOKEN_LEN 64
#define FCM_ERROR_TYPE "type.googleapis.com/google.firebase.fcm.v1.FcmError"

/* An access token issued by /token. */
struct fcm_token {
	char value[FCM_TOKEN_LEN + 1];
	int64_t expires;
};

struct fcm {
	struct h2srv *srv;
	struct plan *plan;
	const char *plan_path;
	const char *project;
	const char *client_email;
	char *sa_pubkey;
	size_t sa_pubkey_len;
	unsigned token_ttl;
	bool fast;
	uint64_t nreq;
	uint64_t nmsg;
	char send_path[256];
	char fast_prefix[256]; /* {"name":"projects/P/messages/0: */
	size_t fast_prefix_len;

	struct fcm_token *tokens;
	size_t ntokens;
};

/* The outcome of checking one send. */
struct fcm_check {
	int status;
	char message[200];
	const char *errcode; /* FcmError errorCode, or NULL */
};

static const char *const fcm_message_keys[] = {
	"name",
	"data",
	"notification",
	"android",
	"webpush",
	"apns",
	"fcm_options",
	"fcmOptions",
	"token",
	"topic",
	"condition",
	NULL,
};

static const char *const fcm_android_keys[] = {
	"collapse_key",
	"collapseKey",
	"priority",
	"ttl",
	"restricted_package_name",
	"restrictedPackageName",
	"data",
	"notification",
	"fcm_options",
	"fcmOptions",
	"direct_boot_ok",
	"directBootOk",
	NULL,
};

/* Set a 400 INVALID_ARGUMENT unless an earlier check already failed. */
static void
fcm_invalid(struct fcm_check *chk, const char *fmt, const char *arg)
{
	if (chk->status != 200)
		return;
	chk->status = 400;
	chk->errcode = "INVALID_ARGUMENT";
	snprintf(chk->message, sizeof(chk->message), fmt, arg);
}

/* Set any other failure unless an earlier check already failed. */
static void
fcm_fail(
    struct fcm_check *chk, int status, const char *errcode, const char *message)
{
	if (chk->status != 200)
		return;
	chk->status = status;
	chk->errcode = errcode;
	snprintf(chk->message, sizeof(chk->message), "%s", message);
}

/* The canonical Google status name for an HTTP status. */
static const char *
fcm_status_name(int status)
{
	switch (status) {
	case 400:
		return "INVALID_ARGUMENT";
	case 401:
		return "UNAUTHENTICATED";
	case 403:
		return "PERMISSION_DENIED";
	case 404:
		return "NOT_FOUND";
	case 409:
		return "ABORTED";
	case 429:
		return "RESOURCE_EXHAUSTED";
	case 500:
		return "INTERNAL";
	case 503:
		return "UNAVAILABLE";
	case 504:
		return "DEADLINE_EXCEEDED";
	default:
		return "UNKNOWN";
	}
}

/* The FCM errorCode for a planned STATUS when the rule names none. */
static const char *
fcm_default_errcode(int status)
{
	switch (status) {
	case 400:
		return "INVALID_ARGUMENT";
	case 401:
		return "THIRD_PARTY_AUTH_ERROR";
	case 403:
		return "SENDER_ID_MISMATCH";
	case 404:
		return "UNREGISTERED";
	case 429:
		return "QUOTA_EXCEEDED";
	case 503:
		return "UNAVAILABLE";
	default:
		return "INTERNAL";
	}
}

/* True when NAME is in the NULL-terminated LIST. */
static bool
fcm_in(const char *const *list, const char *name)
{
	size_t i;

	for (i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* --- access tokens ------------------------------------------------------ */

/* Drop expired tokens, and the oldest when the table is full. */
static void
fcm_tokens_prune(struct fcm *f, int64_t now)
{
	size_t i, n = 0;

	for (i = 0; i < f->ntokens; i++)
		if (f->tokens[i].expires > now)
			f->tokens[n++] = f->tokens[i];
	f->ntokens = n;
	if (f->ntokens == FCM_TOKENS_MAX) {
		memmove(f->tokens, f->tokens + 1,
		    (f->ntokens - 1) * sizeof(*f->tokens));
		f->ntokens--;
	}
}

/* Issue a random opaque token valid for the configured TTL. */
static const char *
fcm_token_issue(struct fcm *f)
{
	unsigned char raw[32];
	char b64[48];
	struct fcm_token *t;
	int64_t now = fakeutil_now();

	fcm_tokens_prune(f, now);
	if (fakeutil_random(raw, sizeof(raw)) < 0)
		return NULL;
	fakeutil_b64url_encode(raw, sizeof(raw), b64);
	t = &f->tokens[f->ntokens++];
	snprintf(t->value, sizeof(t->value), "ya29.fake-%s", b64);
	t->expires = now + f->token_ttl;
	return t->value;
}

/* True when VALUE is an issued token that has not expired. */
static bool
fcm_token_valid(const struct fcm *f, const char *value)
{
	int64_t now = fakeutil_now();
	size_t i;

	for (i = 0; i < f->ntokens; i++)
		if (strcmp(f->tokens[i].value, value) == 0)
			return f->tokens[i].expires > now;
	return false;
}

/* --- the OAuth token endpoint ------------------------------------------- */

/* True when SCOPE (space-separated) includes the messaging scope. */
static bool
fcm_scope_ok(const char *scope)
{
	size_t n = strlen(FCM_SCOPE);
	const char *p = scope;

	while ((p = strstr(p, FCM_SCOPE)) != NULL) {
		if ((p == scope || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ' '))
			return true;
		p += n;
	}
	return false;
}

/* True when AUD names this endpoint as the client reached it. */
static bool
fcm_aud_ok(const struct fcm *f, struct h2srv_req *req, const char *aud)
{
	char want[320];

	snprintf(
	    want, sizeof(want), "https://%s/token", h2srv_req_authority(req));
	if (strcmp(aud, want) == 0)
		return true;
	snprintf(want, sizeof(want), "https://127.0.0.1:%d/token",
	    h2srv_port(f->srv));
	return strcmp(aud, want) == 0;
}

/* Check the claims of a verified assertion; returns NULL or a reason. */
static const char *
fcm_assertion_claims(const struct fcm *f, struct h2srv_req *req, json_t *claims)
{
	const char *iss, *scope, *aud;
	json_t *iat, *exp;
	int64_t now = fakeutil_now();

	iss = json_string_value(json_object_get(claims, "iss"));
	scope = json_string_value(json_object_get(claims, "scope"));
	aud = json_string_value(json_object_get(claims, "aud"));
	iat = json_object_get(claims, "iat");
	exp = json_object_get(claims, "exp");
	if (iss == NULL || strcmp(iss, f->client_email) != 0)
		return "iss is not the service account";
	if (scope == NULL || !fcm_scope_ok(scope))
		return "scope lacks firebase.messaging";
	if (aud == NULL || !fcm_aud_ok(f, req, aud))
		return "aud is not this token endpoint";
	if (!json_is_integer(iat) || !json_is_integer(exp))
		return "iat and exp must be integers";
	if (json_integer_value(iat) > now + FCM_SKEW)
		return "iat is in the future";
	if (json_integer_value(exp) <= now)
		return "the assertion has expired";
	if (json_integer_value(exp) <= json_integer_value(iat) ||
	    json_integer_value(exp) - json_integer_value(iat) >
	        FCM_ASSERTION_LIFE)
		return "exp must be after iat by at most an hour";
	return NULL;
}

/*
 * Verify the assertion: RS256 pinned from its header before libjwt
 * checks the signature, then the claims. Returns NULL or a reason;
 * *HEADER and *CLAIMS get the decoded parts when they decode.
 */
static const char *
fcm_assertion_check(const struct fcm *f, struct h2srv_req *req,
    const char *assertion, json_t **header, json_t **claims)
{
	const char *alg, *why = "invalid JWT signature";
	jwt_t *jwt = NULL;

	if (fakeutil_jwt_peek(assertion, header, claims) < 0)
		return "the assertion is not a JWT";
	alg = json_string_value(json_object_get(*header, "alg"));
	if (alg == NULL || strcmp(alg, "RS256") != 0)
		return "the assertion must be signed with RS256";

	if (jwt_decode(&jwt, assertion, (const unsigned char *)f->sa_pubkey,
	        (int)f->sa_pubkey_len) != 0 ||
	    jwt_get_alg(jwt) != JWT_ALG_RS256)
		goto out;
	why = fcm_assertion_claims(f, req, *claims);

out:
	jwt_free(jwt);
	return why;
}

/* Answer /token with a JSON body. */
static void
fcm_oauth_answer(struct h2srv_req *req, int status, json_t *obj,
    const struct plan_rule *rule)
{
	struct h2srv_hdr hdrs[3] = {
		{ "content-type", "application/json; charset=utf-8" },
		{ "cache-control", "no-store" },
	};
	struct h2srv_resp resp = { 0 };
	char retry[16];
	char *body = json_dumps(obj, JSON_COMPACT);

	resp.nhdrs = 2;
	if (rule != NULL && rule->retry_after >= 0) {
		snprintf(retry, sizeof(retry), "%d", rule->retry_after);
		hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "retry-after", retry };
	}
	resp.status = status;
	resp.hdrs = hdrs;
	resp.body = body;
	resp.len = body != NULL ? strlen(body) : 0;
	resp.delay_ms = rule != NULL ? rule->delay_ms : 0;
	h2srv_respond(req, &resp);
	free(body);
}

/* Validate the token request; returns NULL or an OAuth error code. */
static const char *
fcm_oauth_validate(struct fcm *f, struct h2srv_req *req, const char **why,
    json_t **header, json_t **claims)
{
	const char *ctype = h2srv_req_header(req, "content-type");
	const char *err = NULL;
	char *grant, *assertion;
	size_t len;
	const char *body = h2srv_req_body(req, &len, NULL);

	if (strcmp(h2srv_req_method(req), "POST") != 0 || ctype == NULL ||
	    strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
		*why = "POST a form (application/x-www-form-urlencoded)";
		return "invalid_request";
	}
	grant = fakeutil_form_get(body, len, "grant_type");
	assertion = fakeutil_form_get(body, len, "assertion");
	if (grant == NULL || strcmp(grant, FCM_GRANT) != 0) {
		*why = "grant_type must be the JWT bearer grant";
		err = "unsupported_grant_type";
	} else if (assertion == NULL) {
		*why = "assertion is missing";
		err = "invalid_request";
	} else if (f->fast) {
		*why = NULL;
	} else if ((*why = fcm_assertion_check(
	                f, req, assertion, header, claims)) != NULL) {
		err = "invalid_grant";
	}
	free(grant);
	free(assertion);
	return err;
}

/* Record the token request. */
static void
fcm_oauth_record(struct h2srv_req *req, int status, const char *why,
    json_t *header, json_t *claims, const char *action)
{
	const char *email = json_string_value(json_object_get(claims, "iss"));
	json_t *ev, *jwt = json_null();

	if (!record_on())
		return;
	if (header != NULL && claims != NULL)
		jwt =
		    json_pack("{s:O,s:O}", "header", header, "claims", claims);
	ev = record_event("oauth", h2srv_conn_id(h2srv_req_conn(req)));
	json_object_set_new(ev, "stream", json_integer(h2srv_req_stream(req)));
	json_object_set_new(
	    ev, "status", status > 0 ? json_integer(status) : json_null());
	json_object_set_new(ev, "client_email",
	    email != NULL ? json_string(email) : json_null());
	json_object_set_new(
	    ev, "error", why != NULL ? json_string(why) : json_null());
	json_object_set_new(ev, "jwt", jwt);
	json_object_set_new(ev, "action", json_string(action));
	record_put(ev);
}

/* Apply a plan rule that does not answer; returns its action or NULL. */
static const char *
fcm_fault(const struct plan_rule *rule, struct h2srv_req *req)
{
	if (rule == NULL)
		return NULL;
	if (rule->close) {
		h2srv_close(h2srv_req_conn(req), "plan close");
		return "close";
	}
	if (rule->goaway) {
		h2srv_goaway(req, rule->reason);
		return "goaway";
	}
	if (rule->refuse) {
		h2srv_refuse(req);
		return "refuse";
	}
	if (rule->stall)
		return "stall";
	return NULL;
}

/* POST /token: verify the assertion and issue an access token. */
static void
fcm_oauth(struct fcm *f, struct h2srv_req *req)
{
	const struct plan_rule *rule;
	json_t *header = NULL, *claims = NULL, *obj;
	const char *err, *why = NULL, *action, *token;
	int status = 200;

	rule = f->fast ? NULL : plan_match(f->plan, 0, "/token", NULL);
	action = fcm_fault(rule, req);
	if (action != NULL) {
		fcm_oauth_record(req, 0, NULL, NULL, NULL, action);
		return;
	}

	err = fcm_oauth_validate(f, req, &why, &header, &claims);
	if (err == NULL && rule != NULL && rule->status > 200) {
		status = rule->status;
		err = rule->reason != NULL ? rule->reason : "internal_failure";
		why = "planned failure";
	}
	token = err == NULL ? fcm_token_issue(f) : NULL;
	if (err == NULL && token == NULL) {
		status = 500;
		err = "internal_failure";
		why = "no random bytes";
	}
	if (err != NULL && status == 200)
		status = 400;

	if (err == NULL)
		obj = json_pack("{s:s,s:i,s:s}", "access_token", token,
		    "expires_in", (int)f->token_ttl, "token_type", "Bearer");
	else
		obj = json_pack(
		    "{s:s,s:s}", "error", err, "error_description", why);
	fcm_oauth_answer(req, status, obj, rule);
	json_decref(obj);
	fcm_oauth_record(req, status, why, header, claims,
	    rule != NULL && rule->delay_ms > 0 ? "delay" : "answer");
	json_decref(header);
	json_decref(claims);
}

/* --- messages:send ------------------------------------------------------ */

/* A map whose values must all be strings, with no reserved keys. */
static void
fcm_check_data(json_t *data, const char *where, struct fcm_check *chk)
{
	const char *key;
	json_t *v;

	if (data == NULL)
		return;
	if (!json_is_object(data)) {
		fcm_invalid(chk, "%s must be a map of strings", where);
		return;
	}
	json_object_foreach(data, key, v)
	{
		if (!json_is_string(v))
			fcm_invalid(
			    chk, "data value of \"%s\" is not a string", key);
		else if (strcmp(key, "from") == 0 ||
		    strcmp(key, "message_type") == 0 ||
		    strncmp(key, "google.", 7) == 0 ||
		    strncmp(key, "gcm.", 4) == 0)
			fcm_invalid(chk, "data key \"%s\" is reserved", key);
	}
}

/* android.ttl: a decimal number of seconds with an "s" suffix. */
static bool
fcm_ttl_ok(const char *ttl)
{
	const char *p = ttl;
	size_t frac = 0;
	long secs;
	char *end;

	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	secs = strtol(p, &end, 10);
	if (errno != 0 || secs > FCM_TTL_MAX)
		return false;
	p = end;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++)
			frac++;
		if (frac == 0 || frac > 9)
			return false;
	}
	return p[0] == 's' && p[1] == '\0';
}

/* The android block: known keys, priority, ttl and its data. */
static void
fcm_check_android(json_t *android, struct fcm_check *chk)
{
	const char *key, *prio, *ttl;
	json_t *v;

	if (android == NULL)
		return;
	if (!json_is_object(android)) {
		fcm_invalid(chk, "%s must be an object", "android");
		return;
	}
	json_object_foreach(android, key, v) if (!fcm_in(fcm_android_keys, key))
	    fcm_invalid(chk, "unknown field \"android.%s\"", key);

	v = json_object_get(android, "priority");
	prio = json_string_value(v);
	if (v != NULL &&
	    (prio == NULL ||
	        (strcmp(prio, "NORMAL") != 0 && strcmp(prio, "HIGH") != 0)))
		fcm_invalid(
		    chk, "%s must be NORMAL or HIGH", "android.priority");
	v = json_object_get(android, "ttl");
	ttl = json_string_value(v);
	if (v != NULL && (ttl == NULL || !fcm_ttl_ok(ttl)))
		fcm_invalid(
		    chk, "%s must be a duration like \"30s\"", "android.ttl");
	fcm_check_data(json_object_get(android, "data"), "android.data", chk);
}

/* The apns override: headers a map of strings, payload an object. */
static void
fcm_check_apns(json_t *apns, struct fcm_check *chk)
{
	json_t *headers, *payload, *v;
	const char *key;

	if (apns == NULL)
		return;
	if (!json_is_object(apns)) {
		fcm_invalid(chk, "%s must be an object", "apns");
		return;
	}
	headers = json_object_get(apns, "headers");
	if (headers != NULL && !json_is_object(headers))
		fcm_invalid(chk, "%s must be a map of strings", "apns.headers");
	else if (headers != NULL)
		json_object_foreach(headers, key, v) if (!json_is_string(v))
		    fcm_invalid(chk,
		        "apns header \"%s\" is not a "
		        "string",
		        key);
	payload = json_object_get(apns, "payload");
	if (payload != NULL && !json_is_object(payload))
		fcm_invalid(chk, "%s must be an object", "apns.payload");
}

/* Exactly one target, each a non-empty string. */
static void
fcm_check_target(json_t *msg, struct fcm_check *chk)
{
	static const char *const targets[] = { "token", "topic", "condition" };
	size_t i, n = 0;
	json_t *v;

	for (i = 0; i < 3; i++) {
		v = json_object_get(msg, targets[i]);
		if (v == NULL)
			continue;
		n++;
		if (!json_is_string(v) || json_string_length(v) == 0)
			fcm_invalid(
			    chk, "%s must be a non-empty string", targets[i]);
	}
	if (n != 1)
		fcm_invalid(chk, "%s",
		    "exactly one of token, topic or "
		    "condition is required");
}

/* The request body: {"message": {...}, "validate_only"?: bool}. */
static void
fcm_check_message(json_t *root, struct fcm_check *chk)
{
	json_t *msg, *v;
	const char *key;

	if (!json_is_object(root)) {
		fcm_invalid(chk, "%s", "the body is not a JSON object");
		return;
	}
	json_object_foreach(root, key, v) if (strcmp(key, "message") != 0 &&
	    strcmp(key, "validate_only") != 0 &&
	    strcmp(key, "validateOnly") != 0)
	    fcm_invalid(chk, "unknown field \"%s\"", key);
	msg = json_object_get(root, "message");
	if (!json_is_object(msg)) {
		fcm_invalid(chk, "%s", "message is required");
		return;
	}
	json_object_foreach(msg, key, v) if (!fcm_in(fcm_message_keys, key))
	    fcm_invalid(chk, "unknown field \"message.%s\"", key);

	fcm_check_target(msg, chk);
	fcm_check_data(json_object_get(msg, "data"), "data", chk);
	v = json_object_get(msg, "notification");
	if (v != NULL && !json_is_object(v))
		fcm_invalid(chk, "%s must be an object", "notification");
	fcm_check_android(json_object_get(msg, "android"), chk);
	fcm_check_apns(json_object_get(msg, "apns"), chk);
}

/* The path must be messages:send of our project. */
static void
fcm_check_path(struct fcm *f, struct h2srv_req *req, struct fcm_check *chk)
{
	const char *path = h2srv_req_path(req), *tail;
	size_t plen = strlen(path), tlen = strlen("/messages:send");

	if (strcmp(path, f->send_path) == 0) {
		if (strcmp(h2srv_req_method(req), "POST") != 0)
			fcm_fail(chk, 404, NULL, "Method not found.");
		return;
	}
	tail = plen > tlen ? path + plen - tlen : "";
	if (strncmp(path, "/v1/projects/", 13) == 0 &&
	    strcmp(tail, "/messages:send") == 0)
		fcm_fail(chk, 403, NULL,
		    "The caller has no permission on "
		    "this project.");
	else
		fcm_fail(chk, 404, NULL, "Requested entity was not found.");
}

/* The bearer token must be one /token issued and still valid. */
static void
fcm_check_auth(struct fcm *f, struct h2srv_req *req, struct fcm_check *chk)
{
	const char *auth = h2srv_req_header(req, "authorization");

	if (auth == NULL || strncasecmp(auth, "bearer ", 7) != 0 ||
	    !fcm_token_valid(f, auth + 7))
		fcm_fail(chk, 401, NULL,
		    "The request lacks a valid OAuth 2 "
		    "access token.");
}

/* Run the checks in the order Google applies them. */
static void
fcm_check(
    struct fcm *f, struct h2srv_req *req, json_t *root, struct fcm_check *chk)
{
	size_t len, total;

	chk->status = 200;
	fcm_check_path(f, req, chk);
	if (*h2srv_req_authority(req) == '\0')
		fcm_invalid(chk, "%s", ":authority is required");
	fcm_check_auth(f, req, chk);
	h2srv_req_body(req, &len, &total);
	if (total > FCM_MESSAGE_MAX)
		fcm_invalid(chk, "%s", "the message is larger than 4096 bytes");
	else if (root == NULL)
		fcm_invalid(chk, "%s", "invalid JSON payload");
	if (chk->status == 200)
		fcm_check_message(root, chk);
}

/* Google's error document for a failed send. */
static char *
fcm_error_body(int status, const char *message, const char *errcode)
{
	json_t *err, *obj;
	char *body;

	err = json_pack("{s:i,s:s,s:s}", "code", status, "message", message,
	    "status", fcm_status_name(status));
	if (errcode != NULL)
		json_object_set_new(err, "details",
		    json_pack("[{s:s,s:s}]", "@type", FCM_ERROR_TYPE,
		        "errorCode", errcode));
	obj = json_pack("{s:o}", "error", err);
	body = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return body;
}

/* Send the answer; success ends with an extra empty DATA frame. */
static void
fcm_answer(struct fcm *f, struct h2srv_req *req, const struct fcm_check *chk,
    bool validate_only, const struct plan_rule *rule)
{
	struct h2srv_hdr hdrs[3] = {
		{ "content-type", "application/json; charset=UTF-8" },
	};
	struct h2srv_resp resp = { 0 };
	char retry[16], *body;
	uint64_t id = ++f->nmsg;

	resp.nhdrs = 1;
	if (chk->status == 401)
		hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "www-authenticate",
			"Bearer realm=\"https://accounts.google.com/\"" };
	if (rule != NULL && rule->retry_after >= 0) {
		snprintf(retry, sizeof(retry), "%d", rule->retry_after);
		hdrs[resp.nhdrs++] = (struct h2srv_hdr){ "retry-after", retry };
	}
	if (chk->status != 200) {
		body = fcm_error_body(chk->status, chk->message, chk->errcode);
	} else if (validate_only) {
		if (asprintf(&body,
		        "{\"name\":\"projects/%s/messages/"
		        "fake_message_id\"}",
		        f->project) < 0)
			body = NULL;
	} else if (asprintf(&body,
	               "{\"name\":\"projects/%s/messages/"
	               "0:%lld%%%016llx\"}",
	               f->project,
	               (long long)fakeutil_now_ms() * 1000 +
	                   (long long)(id % 1000),
	               (unsigned long long)fakeutil_rand64()) < 0) {
		body = NULL;
	}

	resp.status = chk->status;
	resp.hdrs = hdrs;
	resp.body = body;
	resp.len = body != NULL ? strlen(body) : 0;
	resp.split_end = chk->status == 200;
	resp.delay_ms = rule != NULL ? rule->delay_ms : 0;
	h2srv_respond(req, &resp);
	free(body);
}

/* Finish and write the request record. */
static void
fcm_record(struct h2srv_req *req, uint64_t n, const struct fcm_check *chk,
    const char *action)
{
	json_t *ev = h2srv_req_record(req, n);

	if (ev == NULL)
		return;
	json_object_set_new(ev, "jwt", json_null());
	json_object_set_new(ev, "status",
	    chk != NULL ? json_integer(chk->status) : json_null());
	json_object_set_new(ev, "reason",
	    chk != NULL && chk->status != 200
	        ? json_string(chk->errcode != NULL
	                  ? chk->errcode
	                  : fcm_status_name(chk->status))
	        : json_null());
	if (chk != NULL && chk->status != 200)
		json_object_set_new(ev, "message", json_string(chk->message));
	json_object_set_new(ev, "action", json_string(action));
	record_put(ev);
}

/* The message's device token, for plan rules (NULL when none). */
static const char *
fcm_target_token(json_t *root)
{
	return json_string_value(
	    json_object_get(json_object_get(root, "message"), "token"));
}

/* One send: plan faults, checks, answer, record. */
static void
fcm_send(struct fcm *f, struct h2srv_req *req)
{
	struct fcm_check chk = { 0 };
	const struct plan_rule *rule;
	const char *action, *body;
	uint64_t n = ++f->nreq;
	json_t *root;
	size_t len;
	bool validate;

	body = h2srv_req_body(req, &len, NULL);
	root = json_loadb(body, len, 0, NULL);
	rule =
	    plan_match(f->plan, n, h2srv_req_path(req), fcm_target_token(root));
	action = fcm_fault(rule, req);
	if (action != NULL) {
		fcm_record(req, n, NULL, action);
		goto out;
	}

	fcm_check(f, req, root, &chk);
	if (chk.status == 200 && rule != NULL && rule->status > 200) {
		chk.status = rule->status;
		chk.errcode = rule->reason != NULL
		    ? rule->reason
		    : fcm_default_errcode(rule->status);
		snprintf(chk.message, sizeof(chk.message), "planned %s",
		    chk.errcode);
	}
	validate = json_is_true(json_object_get(root, "validate_only")) ||
	    json_is_true(json_object_get(root, "validateOnly"));
	fcm_answer(f, req, &chk, validate, rule);
	if (rule != NULL && rule->max_streams >= 0)
		h2srv_set_max_streams(
		    h2srv_req_conn(req), (uint32_t)rule->max_streams);
	fcm_record(req, n, &chk,
	    rule != NULL && rule->delay_ms > 0 ? "delay" : "answer");

out:
	json_decref(root);
}

/* Route a complete request to /token or messages:send. */
static void
fcm_request_cb(struct h2srv_req *req, void *arg)
{
	struct fcm *f = arg;

	if (strcmp(h2srv_req_path(req), "/token") == 0)
		fcm_oauth(f, req);
	else
		fcm_send(f, req);
}

/* Append the decimal digits of V to OUT; returns the new end. */
static char *
fcm_put_u64(char *out, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*out++ = tmp[--n];
	return out;
}

/* --fast: any send gets 200 and a message name, nothing is checked. */
static void
fcm_fast_cb(struct h2srv_req *req, void *arg)
{
	static const struct h2srv_hdr hdr = { "content-type",
		"application/json; charset=UTF-8" };
	struct fcm *f = arg;
	struct h2srv_resp resp = { 0 };
	char body[sizeof(f->fast_prefix) + 32], *p;

	if (strcmp(h2srv_req_path(req), "/token") == 0) {
		fcm_oauth(f, req);
		return;
	}
	memcpy(body, f->fast_prefix, f->fast_prefix_len);
	p = fcm_put_u64(body + f->fast_prefix_len, ++f->nmsg);
	memcpy(p, "\"}", 2);
	resp.status = 200;
	resp.hdrs = &hdr;
	resp.nhdrs = 1;
	resp.body = body;
	resp.len = (size_t)(p + 2 - body);
	resp.split_end = true;
	h2srv_respond(req, &resp);
}

/* SIGHUP: re-read the plan, keeping the old one if the new one is bad. */
static void
fcm_hup(void *arg)
{
	struct fcm *f = arg;
	char err[256];

	if (f->plan_path == NULL || f->fast)
		return;
	if (plan_reload(f->plan_path, &f->plan, err, sizeof(err)) < 0) {
		fprintf(
		    stderr, "fake_fcm: plan %s kept: %s\n", f->plan_path, err);
		return;
	}
	h2srv_set_ignore_pings(f->srv, f->plan->ignore_pings);
}

/* --- startup ------------------------------------------------------------ */

/* Print the command line and exit 2. */
static void
fcm_usage(void)
{
	fprintf(stderr,
	    "usage: fake_fcm --cert FILE --key FILE [--listen ADDR:PORT]\n"
	    "    [--plan FILE] [--record FILE] [--fast] [--max-streams N]\n"
	    "    [--ping-strikes N] --project P --sa-public-key FILE\n"
	    "    --client-email E [--token-ttl SECONDS]\n");
	exit(2);
}

/* Parse a non-negative integer option or exit. */
static unsigned long
fcm_number(const char *name, const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || *s == '\0' || v > max)
		fakeutil_die("--%s wants a number up to %lu", name, max);
	return v;
}

/* Read a whole file into a NUL-terminated buffer (caller frees). */
static char *
fcm_slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	long size;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (size = ftell(fp)) >= 0 &&
	    fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)size + 1))) {
		*len = fread(buf, 1, (size_t)size, fp);
		buf[*len] = '\0';
	}
	fclose(fp);
	return buf;
}

struct fcm_opts {
	struct h2srv_config cfg;
	const char *record;
	const char *pubkey_path;
	uint32_t max_streams;
};

/* Fill F and O from the command line. */
static void
fcm_parse(int argc, char **argv, struct fcm *f, struct fcm_opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "plan", required_argument, NULL, 'p' },
		{ "record", required_argument, NULL, 'r' },
		{ "fast", no_argument, NULL, 'f' },
		{ "max-streams", required_argument, NULL, 'm' },
		{ "ping-strikes", required_argument, NULL, 's' },
		{ "project", required_argument, NULL, 'P' },
		{ "sa-public-key", required_argument, NULL, 'K' },
		{ "client-email", required_argument, NULL, 'e' },
		{ "token-ttl", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->cfg.listen = optarg;
			break;
		case 'c':
			o->cfg.cert = optarg;
			break;
		case 'k':
			o->cfg.key = optarg;
			break;
		case 'p':
			f->plan_path = optarg;
			break;
		case 'r':
			o->record = optarg;
			break;
		case 'f':
			f->fast = true;
			break;
		case 'm':
			o->max_streams = (uint32_t)fcm_number(
			    "max-streams", optarg, INT32_MAX);
			break;
		case 's':
			o->cfg.ping_strikes =
			    (unsigned)fcm_number("ping-strikes", optarg, 1000);
			break;
		case 'P':
			f->project = optarg;
			break;
		case 'K':
			o->pubkey_path = optarg;
			break;
		case 'e':
			f->client_email = optarg;
			break;
		case 't':
			f->token_ttl = (unsigned)fcm_number(
			    "token-ttl", optarg, 86400 * 365);
			break;
		default:
			fcm_usage();
		}
	}
	if (optind != argc || o->cfg.cert == NULL || o->cfg.key == NULL)
		fcm_usage();
	if (!f->fast &&
	    (f->project == NULL || f->client_email == NULL ||
	        o->pubkey_path == NULL))
		fcm_usage();
	if (f->project == NULL)
		f->project = "vouch-test";
}

/* Load the key, plan and record that normal mode needs. */
static void
fcm_load(struct fcm *f, struct fcm_opts *o)
{
	char err[256];

	f->sa_pubkey = fcm_slurp(o->pubkey_path, &f->sa_pubkey_len);
	if (f->sa_pubkey == NULL)
		fakeutil_die(
		    "cannot read %s: %s", o->pubkey_path, strerror(errno));
	if (f->plan_path != NULL) {
		f->plan = plan_load(f->plan_path, err, sizeof(err));
		if (f->plan == NULL)
			fakeutil_die("plan: %s", err);
	}
	if (o->record != NULL && record_open(o->record) < 0)
		fakeutil_die("cannot open %s: %s", o->record, strerror(errno));
}

/* Parse options, load what is needed, serve until SIGTERM. */
int
main(int argc, char **argv)
{
	struct fcm f = { .token_ttl = 3600 };
	struct fcm_opts o = { .cfg.listen = "127.0.0.1:0",
		.max_streams = 100,
		.cfg.ping_strikes = 3 };
	struct event_base *base;
	int rv;

	fakeutil_set_prog("fake_fcm");
	fcm_parse(argc, argv, &f, &o);
	if (!f.fast)
		fcm_load(&f, &o);
	if (strlen(f.project) > 100)
		fakeutil_die("--project is too long");
	snprintf(f.send_path, sizeof(f.send_path),
	    "/v1/projects/%s/messages:send", f.project);
	f.fast_prefix_len =
	    (size_t)snprintf(f.fast_prefix, sizeof(f.fast_prefix),
	        "{\"name\":\"projects/%s/messages/0:", f.project);
	f.tokens = calloc(FCM_TOKENS_MAX, sizeof(*f.tokens));
	base = event_base_new();
	if (f.tokens == NULL || base == NULL)
		fakeutil_die("out of memory");

	o.cfg.initial_streams = o.max_streams;
	o.cfg.request_cb = f.fast ? fcm_fast_cb : fcm_request_cb;
	o.cfg.arg = &f;
	f.srv = h2srv_new(base, &o.cfg);
	if (f.srv == NULL)
		fakeutil_die("cannot start the server");
	if (f.plan != NULL)
		h2srv_set_ignore_pings(f.srv, f.plan->ignore_pings);

	rv = h2srv_run(f.srv, fcm_hup, &f);
	h2srv_free(f.srv);
	plan_free(f.plan);
	free(f.sa_pubkey);
	free(f.tokens);
	record_close();
	event_base_free(base);
	return rv == 0 ? 0 : 1;
}
